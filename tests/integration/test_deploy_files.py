"""docker-compose.yml and deploy/k8s, validated offline (no Docker engine, no cluster
runs here): against the Compose specification's JSON schema and the Kubernetes
schemas, and against shoprank itself: every command parses with the CLI, every
SHOPRANK_* variable is a setting server/config.py accepts, and the nginx variables
are the template's."""

from __future__ import annotations

import argparse
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from features.sources import fetch_wheel
from server.cli import parser as cli_parser
from server.config import Settings, from_env

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "shoprank.conf.template"
KUBERNETES_VERSION = "1.37.0"
# The Compose specification's schema, as docker-compose 1.29.2 ships it (from PyPI).
COMPOSE_SPEC = (
    "docker-compose==1.29.2",
    "docker_compose-1.29.2-*.whl",
    "compose/config/compose_spec.json",
)
SHOPRANK_IMAGES = ("shoprank-ranker", "shoprank-jobs")


@pytest.fixture(scope="module")
def compose_schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    requirement, wheel_glob, member = COMPOSE_SPEC
    wheel = fetch_wheel(tmp_path_factory.mktemp("wheels"), requirement, wheel_glob)
    with zipfile.ZipFile(wheel) as archive:
        schema: dict[str, Any] = json.loads(archive.read(member))
    return schema


def compose() -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return body


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def parse_command(args: list[str]) -> argparse.Namespace:
    """The args as `shoprank` parses them; a SystemExit (an unknown flag) fails the test."""
    try:
        return cli_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"shoprank does not accept {args}")


def check_settings(env: dict[str, str]) -> Settings:
    """SHOPRANK_* as server/config.py reads them: an unknown name or a bad value raises."""
    return from_env({k: str(v) for k, v in env.items() if k.startswith("SHOPRANK_")})


def test_compose_follows_the_compose_specification(compose_schema: dict[str, Any]) -> None:
    jsonschema.validate(compose(), compose_schema)


def test_the_schema_check_catches_a_misspelt_key(compose_schema: dict[str, Any]) -> None:
    body = compose()
    body["services"]["nginx"]["depends_onn"] = body["services"]["nginx"].pop("depends_on")
    with pytest.raises(jsonschema.ValidationError, match="depends_onn"):
        jsonschema.validate(body, compose_schema)


def test_compose_runs_the_topology_with_health_gated_start_up() -> None:
    services = compose()["services"]
    assert set(services) == {
        "redis",
        "postgres",
        "pipeline",
        "ranker-1",
        "ranker-2",
        "nginx",
        "stream",
    }
    for name in ("redis", "postgres", "ranker-1", "ranker-2", "nginx"):
        assert "healthcheck" in services[name], name
    conditions = {
        name: {dep: spec["condition"] for dep, spec in service.get("depends_on", {}).items()}
        for name, service in services.items()
    }
    assert conditions["pipeline"] == {"redis": "service_healthy", "postgres": "service_healthy"}
    assert conditions["stream"] == {"pipeline": "service_completed_successfully"}
    assert services["stream"]["image"].startswith("shoprank-ranker")
    for ranker in ("ranker-1", "ranker-2"):
        assert conditions[ranker] == {"pipeline": "service_completed_successfully"}
        assert services[ranker]["image"].startswith("shoprank-ranker")  # no torch
    assert conditions["nginx"] == {"ranker-1": "service_healthy", "ranker-2": "service_healthy"}
    assert services["pipeline"]["image"].startswith("shoprank-jobs")


def test_compose_commands_and_variables_agree_with_the_cli_and_the_settings() -> None:
    services = compose()["services"]
    for name, service in services.items():
        if not service.get("image", "").startswith(SHOPRANK_IMAGES):
            continue
        args = parse_command(service["command"])
        settings = check_settings(service["environment"])
        assert settings.online_store == "redis" and settings.registry.startswith("postgresql")
        if args.command == "serve":
            port = int(args.port)
            health = " ".join(service["healthcheck"]["test"])
            assert f"127.0.0.1:{port}" in health, name
            assert service["ports"][0].endswith(f":{port}")
            drain = settings.grace_seconds
            assert float(service["stop_grace_period"].rstrip("s")) > drain


def test_nginx_is_given_exactly_the_template_variables_and_reaches_the_replicas() -> None:
    services = compose()["services"]
    template = NGINX_TEMPLATE.read_text()
    names = set(re.findall(r"\$\{(SHOPRANK_[A-Z_]+)\}", template))
    env = services["nginx"]["environment"]
    assert set(env) == names
    mount = services["nginx"]["volumes"][0]
    source, target, _ = mount.split(":")
    assert (ROOT / source).resolve() == NGINX_TEMPLATE
    assert target.startswith("/etc/nginx/templates/") and target.endswith(".template")
    for key in ("SHOPRANK_RANKER_A", "SHOPRANK_RANKER_B"):
        host, port = env[key].split(":")
        assert host in services
        assert parse_command(services[host]["command"]).port == int(port)
    assert services["nginx"]["ports"][0].endswith(f":{env['SHOPRANK_LB_LISTEN']}")


def test_every_kubernetes_manifest_is_valid_for_its_schema() -> None:
    docs = manifests()
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Job",
            "Job",
            "PersistentVolumeClaim",
            "PodDisruptionBudget",
            "Service",
            "Service",
        ]
    )
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    containers: list[dict[str, Any]] = (
        spec.get("template", {}).get("spec", {}).get("containers", [])
    )
    return containers


def test_kubernetes_commands_variables_probes_and_drain_agree_with_shoprank() -> None:
    docs = manifests()
    (config,) = [doc for doc in docs if doc["kind"] == "ConfigMap"]
    settings = check_settings(config["data"])
    assert settings.online_store == "redis_cluster" and settings.registry.startswith("postgresql")
    deployments = {
        doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc
        for doc in docs
        if doc["kind"] == "Deployment"
    }
    assert set(deployments) == {"ranker", "stream"}
    deployment = deployments["ranker"]
    worker = deployments["stream"]
    assert worker["spec"]["replicas"] == 1  # one consumer of the stream
    assert worker["spec"]["strategy"]["type"] == "Recreate"  # never two at once
    (streamer,) = worker["spec"]["template"]["spec"]["containers"]
    assert parse_command(streamer["args"]).action == "stream"
    assert streamer["image"].startswith("shoprank-ranker")
    pod = deployment["spec"]["template"]["spec"]
    (ranker,) = pod["containers"]
    args = parse_command(ranker["args"])
    assert args.command == "serve" and ranker["image"].startswith("shoprank-ranker")
    ports = {port["name"]: port["containerPort"] for port in ranker["ports"]}
    assert ports == {"grpc": int(args.port), "metrics": int(args.metrics_port)}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert ranker[probe]["grpc"]["port"] == int(args.port), probe
    assert ranker["readinessProbe"]["grpc"]["service"] == "shoprank.v1.Ranker"
    pre_stop = ranker["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + settings.grace_seconds
    jobs = [doc for doc in docs if doc["kind"] == "Job"]
    for job in jobs:
        for container in _containers(job):
            assert container["image"].startswith("shoprank-jobs")
            parse_command(container["args"])
    services = [doc for doc in docs if doc["kind"] == "Service"]
    assert any(s["spec"].get("clusterIP") == "None" for s in services)  # client-side balancing
    selector = deployment["spec"]["selector"]["matchLabels"]
    for service in services:
        assert service["spec"]["selector"] == selector
        assert service["spec"]["ports"][0]["port"] == int(args.port)
