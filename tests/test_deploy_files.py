"""Every deployment file parses and has its essentials: the NATS cluster
configs pass `nats-server -t`, the systemd units have their sections and
least capabilities, the Kubernetes manifests are valid YAML with the
workloads and capabilities of docs/deploy.md, and every example config passes
`pathwatch config check`."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pathwatch.runtime.embedded import find_nats_server
from tests.test_deploy_cluster import server_env

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CLUSTER_CONFIGS = sorted((DEPLOY / "nats" / "cluster").glob("nats-*.conf"))
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
EXAMPLES = sorted((DEPLOY / "examples").glob("*.yaml"))


def test_the_files_exist() -> None:
    assert len(CLUSTER_CONFIGS) == 3
    assert {unit.name for unit in UNITS} >= {
        "pathwatch-agent.service",
        "pathwatch-aggregator@.service",
        "pathwatch-enforcer.service",
        "pathwatch-router.service",
        "pathwatch-healer.service",
        "pathwatch-notifier.service",
        "pathwatch-up.service",
    }
    assert MANIFESTS and (DEPLOY / "examples" / "two-site.yaml") in EXAMPLES


@pytest.mark.parametrize("config", CLUSTER_CONFIGS, ids=lambda p: p.name)
def test_nats_cluster_config_is_valid(config: Path) -> None:
    result = subprocess.run(
        [str(find_nats_server()), "-t", "-c", str(config)],
        capture_output=True,
        text=True,
        env=server_env(),
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "is valid" in result.stderr + result.stdout


def test_nats_cluster_config_without_passwords_is_refused() -> None:
    """Passwords come from the environment: a missing one is an error, not an open door."""
    result = subprocess.run(
        [str(find_nats_server()), "-t", "-c", str(CLUSTER_CONFIGS[0])],
        capture_output=True,
        text=True,
        env={},
    )
    assert result.returncode != 0
    assert "PATHWATCH_NATS_PW_" in result.stderr


def test_cluster_nodes_differ_only_in_name_and_address() -> None:
    texts = [config.read_text() for config in CLUSTER_CONFIGS]
    names = [re.search(r"^server_name: (\S+)", text, re.M) for text in texts]
    assert [m.group(1) if m else None for m in names] == ["pw-nats-1", "pw-nats-2", "pw-nats-3"]
    for text in texts:
        assert "include ./accounts.conf" in text
        assert text.count("nats-route://") == 3
    accounts = (DEPLOY / "nats" / "cluster" / "accounts.conf").read_text()
    assert "include ../partitions.conf" in accounts


def read_unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_unit_has_sections_and_hardening(unit: Path) -> None:
    parsed = read_unit(unit)
    assert parsed.sections() == ["Unit", "Service", "Install"]
    service = parsed["Service"]
    assert service.get("ExecStart", "").split()[0].startswith("/usr/bin/")
    assert service.get("DynamicUser") == "yes"
    assert service.get("NoNewPrivileges") == "yes"
    assert service.get("ProtectSystem") == "strict"
    assert parsed["Install"].get("WantedBy") == "multi-user.target"


EXPECTED_CAPABILITIES = {
    "pathwatch-agent.service": {"CAP_NET_RAW", "CAP_NET_ADMIN"},
    "pathwatch-aggregator@.service": set(),
    "pathwatch-enforcer.service": set(),
    "pathwatch-notifier.service": set(),
    "pathwatch-router.service": {"CAP_NET_ADMIN"},
    "pathwatch-nats@.service": set(),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_CAPABILITIES))
def test_systemd_unit_capabilities_are_least(name: str) -> None:
    service = read_unit(DEPLOY / "systemd" / name)["Service"]
    ambient = set(service.get("AmbientCapabilities", "").split())
    bounding = set(service.get("CapabilityBoundingSet", "").split())
    assert ambient == EXPECTED_CAPABILITIES[name]
    assert bounding == EXPECTED_CAPABILITIES[name]


def test_systemd_units_run_the_role_commands() -> None:
    exec_of = {u.name: read_unit(u)["Service"]["ExecStart"] for u in UNITS}
    assert " agent -c " in exec_of["pathwatch-agent.service"]
    assert "--node" in exec_of["pathwatch-agent.service"]
    assert "--partition %i" in exec_of["pathwatch-aggregator@.service"]
    assert "--instance" in exec_of["pathwatch-enforcer.service"]
    assert " router -c " in exec_of["pathwatch-router.service"]
    assert " healer " in exec_of["pathwatch-healer.service"]
    assert " notifier -c " in exec_of["pathwatch-notifier.service"]
    assert " up -c " in exec_of["pathwatch-up.service"]


def load_manifests() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in MANIFESTS:
        for document in yaml.safe_load_all(path.read_text()):
            assert isinstance(document, dict), f"{path.name}: a document is not a mapping"
            assert {"apiVersion", "kind", "metadata"} <= document.keys(), path.name
            documents.append(document)
    return documents


def workload(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for document in documents:
        if document["kind"] == kind and document["metadata"]["name"] == name:
            return document
    raise AssertionError(f"no {kind} {name}")


def container_of(document: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = document["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_kubernetes_workloads_and_capabilities() -> None:
    documents = load_manifests()
    agent = workload(documents, "DaemonSet", "pathwatch-agent")
    assert container_of(agent)["securityContext"]["capabilities"]["add"] == ["NET_RAW", "NET_ADMIN"]
    router = workload(documents, "DaemonSet", "pathwatch-router")
    assert container_of(router)["securityContext"]["capabilities"]["add"] == ["NET_ADMIN"]
    enforcer = workload(documents, "Deployment", "pathwatch-enforcer")
    assert enforcer["spec"]["replicas"] == 2
    assert "add" not in container_of(enforcer)["securityContext"]["capabilities"]
    aggregator = workload(documents, "StatefulSet", "pathwatch-aggregator")
    args = container_of(aggregator)["args"]
    partitions = int(args[args.index("--partitions") + 1])
    assert aggregator["spec"]["replicas"] == partitions
    mapping = (DEPLOY / "nats" / "partitions.conf").read_text()
    assert f"partition({partitions}," in mapping
    notifier = workload(documents, "Deployment", "pathwatch-notifier")
    assert notifier["spec"]["replicas"] == 1  # never two at once: a Recreate rollout
    assert notifier["spec"]["strategy"] == {"type": "Recreate"}
    assert "add" not in container_of(notifier)["securityContext"]["capabilities"]
    roles = {"agent", "router", "enforcer", "aggregator", "notifier"}
    for document in (agent, router, enforcer, aggregator, notifier):
        assert container_of(document)["args"][0] in roles
        selector = document["spec"]["selector"]["matchLabels"]
        assert selector.items() <= document["spec"]["template"]["metadata"]["labels"].items()


def test_kubernetes_configmap_holds_a_valid_config(tmp_path: Path) -> None:
    config_map = workload(load_manifests(), "ConfigMap", "pathwatch-config")
    path = tmp_path / "pathwatch.yaml"
    path.write_text(config_map["data"]["pathwatch.yaml"])
    check = pathwatch_config_check(path)
    assert check.returncode == 0, check.stderr + check.stdout


def pathwatch_config_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pathwatch", "config", "check", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_config_passes_config_check(example: Path) -> None:
    check = pathwatch_config_check(example)
    assert check.returncode == 0, check.stderr + check.stdout
    assert "ok" in check.stdout


LOOPBACK_OR_NAMESPACE = re.compile(r"^(127\.\d+\.\d+\.\d+|::1|0\.0\.0\.0)$")


def test_deploy_files_name_only_loopback_addresses() -> None:
    """The network-safety rule: no address outside 127.0.0.0/8 in deploy/."""
    ipv4 = re.compile(r"(?<![\w.])(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?![\w.])")
    offenders = []
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.suffix in {".yaml", ".conf", ".service", ".md"}:
            for address in ipv4.findall(path.read_text()):
                if not LOOPBACK_OR_NAMESPACE.match(address):
                    offenders.append(f"{path.relative_to(ROOT)}: {address}")
    assert offenders == []
